% rebase('base', title=t['done_title'])
<h1 id="done">{{t['done_title']}}</h1>
<p>{{t['done_text']}}</p>
% if usage_points:
<p class="label">{{t['done_points']}}</p>
<ul class="points">
% for point in usage_points:
  <li>{{point}}</li>
% end
</ul>
% end
