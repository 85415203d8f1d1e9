% rebase('base', title=t['confirm_title'] if pending else t['enter_title'])
% if pending:
<h1>{{t['confirm_title']}}</h1>
<p class="label" id="code-label">{{t['confirm_code']}}</p>
<p class="code" id="user-code" aria-labelledby="code-label">{{code}}</p>
<p class="label">{{t['confirm_app']}}</p>
<p class="app" id="application">{{pending.application or t['confirm_unknown_app']}} <span class="client">({{pending.client_id}})</span></p>
<p class="warning" id="warning">{{t['confirm_warning']}}</p>
<form method="post" action="{{config.base_url}}/auth/verify_code">
  <input type="hidden" name="user_code" value="{{code}}">
  <input type="hidden" name="csrf" value="{{csrf}}">
% if state:
  <input type="hidden" name="state" value="{{state}}">
% end
  <button type="submit" id="confirm">{{t['confirm_button']}}</button>
</form>
<p class="hint">{{t['confirm_next']}} {{t['confirm_expires'].format(code_lifetime=spell(config.code_lifetime))}}</p>
% else:
<h1>{{t['enter_title']}}</h1>
% if error:
<p class="error" role="alert" id="error">{{t['err_' + error]}} {{t.get('next_' + error, '')}}</p>
% end
<form method="post" action="{{config.base_url}}/auth/verify_code">
  <label for="user_code">{{t['code_label']}}</label>
  <input id="user_code" name="user_code" value="{{typed}}" autocomplete="off" autocapitalize="characters"
         autocorrect="off" spellcheck="false" maxlength="20" placeholder="XXXX-XXXX" required
         aria-describedby="{{'error ' if error else ''}}code-hint"{{!' aria-invalid="true"' if error else ''}}>
  <p class="hint" id="code-hint">{{t['code_hint']}}</p>
% if state:
  <input type="hidden" name="state" value="{{state}}">
% end
  <button type="submit" id="continue">{{t['continue']}}</button>
</form>
<script src="{{config.base_url}}/static/code.js" defer></script>
% end
