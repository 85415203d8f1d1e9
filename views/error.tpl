% rebase('base', title=t['error_title'])
<h1>{{t['error_title']}}</h1>
<p class="error" role="alert" id="error">{{t.get('err_' + reason, t['err_server'])}}</p>
% if reason in ('unknown_code', 'expired_code', 'bad_state', 'denied', 'bad_usage_points', 'exchange_failed'):
<p>{{t['restart']}}</p>
% end
% if reason in ('unknown_code', 'bad_csrf', 'too_many_attempts'):
<p><a class="button" href="{{config.base_url}}/device">{{t['try_again']}}</a></p>
% end
<p><a href="{{config.base_url}}/">{{t['back_home']}}</a></p>
