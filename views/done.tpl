% rebase('base', title=t['done_title'])
<div class="success">
<h1 id="done">{{t['done_title']}}</h1>
<p>{{t['done_text']}}</p>
</div>
<p class="next" id="next">{{t['done_next']}}</p>
% if get('application'):
<p class="label">{{t['done_app']}}</p>
<p class="app">{{application}}</p>
% end
% if usage_points:
<p class="label">{{t['done_points']}}</p>
<ul class="points" id="usage-points">
% for point in usage_points:
  <li>{{point}}</li>
% end
</ul>
% end
<p class="hint">{{t['done_revoke']}}</p>
