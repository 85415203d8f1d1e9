% rebase('base', title=t['site_title'])
<h1>{{t['tagline']}}</h1>
<p>{{t['home_intro']}}</p>
<p>{{t['home_how']}}</p>
<p><a class="button" href="{{config.base_url}}/device">{{t['home_enter']}}</a></p>
<p>{{t['home_not_enedis']}}</p>
<h2>{{t['home_stores_title']}}</h2>
<p>{{t['home_stores_intro']}}</p>
<ul id="stored">
% for item in t['home_stores']:
  <li>{{item.format(code_lifetime=spell(config.code_lifetime), consent=spell(config.duration_seconds))}}</li>
% end
</ul>
<p>{{t['home_no_data']}}</p>
<h2>{{t['home_operator_title']}}</h2>
% if config.operator_name:
<p id="operator"><strong>{{config.operator_name}}</strong>
%   if config.operator_contact:
<br>{{t['home_operator_contact']}}
%     if operator_href:
<a href="{{operator_href}}">{{config.operator_contact}}</a>
%     else:
{{config.operator_contact}}
%     end
%   end
</p>
% else:
<p id="operator">{{t['home_operator_unknown']}}</p>
% end
