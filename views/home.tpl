% rebase('base', title=t['site_title'])
<h1>{{t['tagline']}}</h1>
<p>{{t['home_intro']}}</p>
<p>{{t['home_how']}}</p>
<p><a class="button" href="{{config.base_url}}/device">{{t['home_enter']}}</a></p>
<h2>{{t['home_stores_title']}}</h2>
<p>{{t['home_stores']}}</p>
