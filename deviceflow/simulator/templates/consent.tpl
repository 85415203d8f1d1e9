% rebase("page.tpl", title="Autoriser l'accès à vos données")
% if error:
<p class="error">{{error}}</p>
% end
<p>L'application <b>{{client_id}}</b> demande à consulter les données de consommation et de production de votre
compteur, pour une durée de <b>{{duration}}</b>.</p>
<form method="post" action="{{action}}">
% for name, value in hidden:
<input type="hidden" name="{{name}}" value="{{value}}">
% end
<fieldset><legend>{{choice}}</legend>
% for meter in meters:
<label class="meter"><input type="{{input_type}}" name="usage_point_id" value="{{meter.prm}}">
<b>{{meter.prm}}</b> — {{meter.label}}<br>
<small>{{meter.street}}, {{meter.postal_code}} {{meter.city}}</small></label>
% end
</fieldset>
<button type="submit" name="decision" value="accept">Accepter</button><button type="submit" name="decision" value="refuse">Refuser</button>
</form>
<p><small>Consentement {{version}} ; retour vers {{redirect_uri}}</small></p>
