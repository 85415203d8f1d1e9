<!DOCTYPE html>
<html lang="{{lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{title}} · {{t['site_title']}}</title>
<link rel="stylesheet" href="{{config.base_url}}/static/style.css">
</head>
<body>
% if demo:
<div class="demo" role="note">{{t['demo_banner']}}</div>
% end
<header>
  <a class="brand" href="{{config.base_url}}/">{{t['site_title']}}</a>
  <span class="tagline">{{t['tagline']}}</span>
  <a class="lang" id="switch-language" href="{{switch_href}}" hreflang="{{other_lang}}" lang="{{other_lang}}">{{t['switch_language']}}</a>
</header>
<main>
{{!base}}
</main>
% if config.operator_name:
<footer>
  <p>{{t['home_operator']}} {{config.operator_name}}{{' — ' + config.operator_contact if config.operator_contact else ''}}</p>
</footer>
% end
</body>
</html>
