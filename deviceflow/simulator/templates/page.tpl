<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} — Enedis simulé (démo)</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem;color:#222}
.demo{background:#fff3cd;border:2px solid #d39e00;padding:.6rem;border-radius:.4rem;font-weight:bold}
.error{background:#f8d7da;border:1px solid #c0392b;padding:.6rem;border-radius:.4rem}
label.meter{display:block;border:1px solid #ccc;border-radius:.4rem;padding:.5rem;margin:.4rem 0}
button{font-size:1rem;padding:.5rem 1.2rem;margin:.5rem .5rem 0 0}
small{color:#555}
</style></head><body>
<p class="demo">Simulated Enedis — demo. Enedis simulé : page de démonstration,
aucune donnée réelle, aucun compte Enedis n'est utilisé.</p>
<h1>{{title}}</h1>
{{!base}}
</body></html>
