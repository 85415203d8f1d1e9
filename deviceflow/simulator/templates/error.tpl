% rebase("page.tpl", title="Erreur")
<p class="error">{{message}}</p>
