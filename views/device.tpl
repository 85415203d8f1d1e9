% rebase('base', title=t['confirm_title'] if pending else t['enter_title'])
% if pending:
<h1>{{t['confirm_title']}}</h1>
<p class="label">{{t['confirm_code']}}</p>
<p class="code" id="user-code">{{code}}</p>
<p class="label">{{t['confirm_app']}}</p>
<p class="app">{{pending.application or t['confirm_unknown_app']}} <span class="client">({{pending.client_id}})</span></p>
<p class="warning" role="alert">{{t['confirm_warning']}}</p>
<form method="post" action="{{config.base_url}}/auth/verify_code">
  <input type="hidden" name="user_code" value="{{code}}">
  <input type="hidden" name="csrf" value="{{csrf}}">
% if state:
  <input type="hidden" name="state" value="{{state}}">
% end
  <button type="submit" id="confirm">{{t['confirm_button']}}</button>
</form>
<p class="hint">{{t['confirm_next']}}</p>
% else:
<h1>{{t['enter_title']}}</h1>
% if error:
<p class="error" role="alert" id="error">{{t['err_' + error]}}</p>
% end
<form method="post" action="{{config.base_url}}/auth/verify_code">
  <label for="user_code">{{t['code_label']}}</label>
  <input id="user_code" name="user_code" value="{{typed}}" autocomplete="off" autocapitalize="characters"
         spellcheck="false" maxlength="20" placeholder="XXXX-XXXX" required>
% if state:
  <input type="hidden" name="state" value="{{state}}">
% end
  <button type="submit">{{t['continue']}}</button>
</form>
% end
