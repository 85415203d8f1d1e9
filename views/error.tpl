% rebase('base', title=t.get('title_' + reason, t['error_title']))
<h1>{{t.get('title_' + reason, t['error_title'])}}</h1>
<p class="error" role="alert" id="error">{{t.get('err_' + reason, t['err_server'])}}</p>
<p class="next" id="next">{{t.get('next_' + reason, t['next_server']).format(code_lifetime=spell(config.code_lifetime), wait=spell(get('wait') or 60))}}</p>
% if reason in ('unknown_code', 'bad_csrf'):
<p><a class="button" href="{{config.base_url}}/device">{{t['try_again']}}</a></p>
% end
<p><a href="{{config.base_url}}/">{{t['back_home']}}</a></p>
