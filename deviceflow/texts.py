"""What the pages say, in French (Enedis's customers) and English.

Templates take every sentence from here, so a page never mixes languages.
"""

import re

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"

TEXTS = {
    "fr": {
        "site_title": "deviceflow",
        "tagline": "Relais d'autorisation Enedis pour la domotique",
        "demo_banner": "Démonstration : Enedis est simulé, aucune donnée réelle n'est utilisée.",
        "switch_language": "English",
        "home_intro": "Ce serveur permet à un module domotique (DomoticzLinky pour Domoticz, Home Assistant, un script) "
        "d'accéder à vos données de consommation Enedis après votre accord, sans détenir de secret.",
        "home_how": "Votre appareil affiche un code et un lien. Ouvrez le lien, vérifiez que le code est le même, "
        "puis donnez votre accord sur le site d'Enedis.",
        "home_stores_title": "Ce qui est conservé",
        "home_stores": [
            "les codes en attente et le nom de l'application qui les demande : {code_lifetime}, puis 24 heures "
            "pour que l'appareil apprenne ce qui s'est passé ;",
            "pour chaque appareil autorisé : les numéros de compteur (PRM) que vous avez choisis et une empreinte "
            "de ses jetons d'accès, jamais les jetons eux-mêmes, pendant la durée de votre accord ({consent}) ;",
            "les adresses IP qui saisissent des codes erronés : 15 minutes, pour freiner les essais au hasard ;",
            "deux cookies techniques : l'un relie ce navigateur à l'autorisation en cours (1 jour), l'autre retient "
            "la langue choisie. Aucun cookie de mesure d'audience ni de publicité.",
        ],
        "home_no_data": "Aucune donnée de consommation n'est conservée : elle passe par ce serveur sans y rester. "
        "Ni les jetons ni les codes secrets n'apparaissent dans ses journaux.",
        "home_operator": "Ce serveur est exploité par",
        "home_enter": "J'ai un code",
        "enter_title": "Saisissez le code affiché par votre appareil",
        "code_label": "Code",
        "continue": "Continuer",
        "confirm_title": "Autoriser cet appareil ?",
        "confirm_code": "Code à vérifier",
        "confirm_app": "Application qui demande l'accès",
        "confirm_unknown_app": "application non identifiée",
        "confirm_warning": "Ne continuez que si ce code est affiché sur votre propre appareil, et que c'est vous "
        "qui venez de le demander. Si quelqu'un vous a envoyé ce lien, fermez cette page.",
        "confirm_button": "Continuer vers Enedis",
        "confirm_next": "Vous allez être redirigé vers le site d'Enedis pour choisir votre compteur et donner votre accord.",
        "done_title": "C'est fait !",
        "done_text": "Votre appareil a reçu l'autorisation.",
        "done_next": "Retournez à votre Domoticz (ou à votre appareil) : il récupère son accès dans les secondes "
        "qui viennent, et les données arrivent dans les minutes qui suivent. Vous pouvez fermer cette page.",
        "done_points": "Compteur(s) autorisé(s)",
        "error_title": "Un problème est survenu",
        "back_home": "Retour à l'accueil",
        "try_again": "Saisir un autre code",
        "err_unknown_code": "Ce code est inconnu ou n'est plus valable.",
        "err_expired_code": "Ce code a expiré avant la fin de l'autorisation.",
        "err_bad_state": "Ce retour d'Enedis ne correspond à aucune demande en cours dans ce navigateur "
        "(lien déjà utilisé, expiré, ou ouvert dans un autre navigateur).",
        "err_bad_csrf": "Le formulaire a expiré. Rechargez la page et réessayez.",
        "err_denied": "L'autorisation a été refusée sur le site d'Enedis. Votre appareil en est informé.",
        "err_bad_usage_points": "Enedis n'a pas indiqué de numéro de compteur valable.",
        "err_upstream_unavailable": "Enedis ne répond pas pour le moment.",
        "err_exchange_failed": "Le service d'autorisation n'a pas délivré l'accès (refus, réponse inutilisable ou "
        "pas de réponse). Votre appareil en est informé.",
        "err_no_usage_points": "Enedis n'a pas encore enregistré votre partage.",
        "err_bad_return": "Ce retour d'Enedis n'a pas la forme attendue : aucun accès n'a été donné.",
        "err_stale_consent": "Enedis indique un partage de vos données plus ancien que cette demande : par "
        "sécurité, seul un partage fait pour cette demande donne l'accès.",
        "err_too_many_returns": "Trop de retours d'Enedis sont arrivés depuis votre réseau.",
        "err_too_many_attempts": "Trop de codes erronés ont été saisis.",
        "err_not_found": "Cette page n'existe pas.",
        "err_bad_request": "La requête n'a pas pu être comprise.",
        "err_server": "Le service est momentanément indisponible.",
        # --- who runs it, help around the code, what to do after an error
        "home_not_enedis": "Ce serveur n'est pas Enedis : vous donnez votre accord sur le site d'Enedis, et vous "
        "pouvez le retirer à tout moment depuis votre espace client Enedis.",
        "home_operator_title": "Qui exploite ce serveur",
        "home_operator_contact": "Contact :",
        "home_operator_unknown": "L'exploitant de ce serveur n'a pas indiqué son nom.",
        "home_stores_intro": "Ce serveur conserve :",
        "code_hint": "8 lettres, affichées par votre appareil (dans Domoticz : dans le journal). "
        "Les tirets et les espaces sont facultatifs.",
        "confirm_expires": "Ce code est valable {code_lifetime} après son affichage sur votre appareil.",
        "done_app": "Application autorisée",
        "done_revoke": "Vous pouvez retirer cet accord à tout moment depuis votre espace client Enedis.",
        "title_unknown_code": "Code inconnu ou expiré",
        "title_expired_code": "Code expiré",
        "title_denied": "Autorisation refusée",
        "title_upstream_unavailable": "Enedis ne répond pas",
        "title_too_many_attempts": "Trop d'essais",
        "title_not_found": "Page introuvable",
        "next_unknown_code": "Vérifiez le code affiché par votre appareil. S'il a expiré, votre appareil vous en "
        "donnera un nouveau.",
        "next_expired_code": "Un code n'est valable que {code_lifetime}. Demandez un nouveau code à votre appareil, "
        "puis suivez son lien sans attendre.",
        "next_bad_state": "Rouvrez dans ce navigateur le lien affiché par votre appareil. Si son code a expiré, "
        "demandez-en un nouveau.",
        "next_bad_csrf": "Rouvrez le lien affiché par votre appareil et cliquez de nouveau sur le bouton.",
        "next_denied": "Si c'était une erreur, demandez un nouveau code à votre appareil et acceptez le partage sur "
        "le site d'Enedis.",
        "next_bad_usage_points": "Recommencez depuis votre appareil et choisissez au moins un compteur sur le site "
        "d'Enedis.",
        "next_upstream_unavailable": "Rien n'est perdu : rechargez cette page dans une minute ou deux. Si le code de "
        "votre appareil a expiré entre-temps, demandez-en un nouveau.",
        "next_no_usage_points": "Rechargez cette page dans quelques secondes.",
        "next_bad_return": "Recommencez depuis votre appareil et donnez votre accord sur le site d'Enedis.",
        "next_stale_consent": "Sur le site d'Enedis (espace client, rubrique de gestion des partages de données), "
        "retirez le partage avec cette application, puis recommencez depuis votre appareil et "
        "partagez de nouveau.",
        "next_too_many_returns": "Attendez {wait} avant de réessayer.",
        "title_stale_consent": "Partage à renouveler",
        "next_exchange_failed": "Recommencez depuis votre appareil pour obtenir un nouveau code.",
        "next_too_many_attempts": "Attendez {wait} avant de saisir un nouveau code. Vérifiez-le bien : il est "
        "affiché par votre appareil.",
        "next_not_found": "Vérifiez l'adresse, ou repartez de l'accueil.",
        "next_bad_request": "Rouvrez le lien affiché par votre appareil.",
        "next_server": "Réessayez dans quelques minutes.",
        "units": {
            "year": ("an", "ans"),
            "month": ("mois", "mois"),
            "day": ("jour", "jours"),
            "hour": ("heure", "heures"),
            "minute": ("minute", "minutes"),
            "second": ("seconde", "secondes"),
        },
    },
    "en": {
        "site_title": "deviceflow",
        "tagline": "Enedis authorization relay for home automation",
        "demo_banner": "Demo: Enedis is simulated, no real data is used.",
        "switch_language": "Français",
        "home_intro": "This server lets a home-automation plugin (DomoticzLinky for Domoticz, Home Assistant, a script) "
        "read your Enedis electricity data once you agree, without holding any secret.",
        "home_how": "Your device shows a code and a link. Open the link, check the code is the same, "
        "then give your consent on Enedis's site.",
        "home_stores_title": "What is stored",
        "home_stores": [
            "pending codes and the name of the application asking: {code_lifetime}, then 24 hours so that the "
            "device learns what happened;",
            "for each authorized device: the meter numbers (PRM) you chose and a digest of its access tokens, "
            "never the tokens themselves, for as long as your consent lasts ({consent});",
            "addresses (IP) that enter wrong codes: 15 minutes, to slow down guessing;",
            "two technical cookies: one ties this browser to the authorization in progress (1 day), the other "
            "remembers the language you chose. No analytics or advertising cookie.",
        ],
        "home_no_data": "No consumption data is kept: it goes through this server without staying. "
        "Neither tokens nor secret codes appear in its logs.",
        "home_operator": "This server is run by",
        "home_enter": "I have a code",
        "enter_title": "Enter the code shown by your device",
        "code_label": "Code",
        "continue": "Continue",
        "confirm_title": "Authorize this device?",
        "confirm_code": "Code to check",
        "confirm_app": "Application asking for access",
        "confirm_unknown_app": "unidentified application",
        "confirm_warning": "Only continue if this code is shown on your own device and you just asked for it. "
        "If someone sent you this link, close this page.",
        "confirm_button": "Continue to Enedis",
        "confirm_next": "You will be sent to Enedis's site to pick your meter and give your consent.",
        "done_title": "All done!",
        "done_text": "Your device has been authorized.",
        "done_next": "Go back to your Domoticz (or your device): it picks up its access within seconds, and data "
        "arrives in the following minutes. You can close this page.",
        "done_points": "Authorized meter(s)",
        "error_title": "Something went wrong",
        "back_home": "Back to the home page",
        "try_again": "Enter another code",
        "err_unknown_code": "This code is unknown or no longer valid.",
        "err_expired_code": "This code expired before the authorization was complete.",
        "err_bad_state": "This answer from Enedis matches no request pending in this browser "
        "(link already used, expired, or opened in another browser).",
        "err_bad_csrf": "The form has expired. Reload the page and try again.",
        "err_denied": "The authorization was refused on Enedis's site. Your device has been told.",
        "err_bad_usage_points": "Enedis did not give a valid meter number.",
        "err_upstream_unavailable": "Enedis is not answering right now.",
        "err_exchange_failed": "The authorization server did not grant access (it refused, answered something "
        "unusable, or did not answer). Your device has been told.",
        "err_no_usage_points": "Enedis has not registered your consent yet.",
        "err_bad_return": "This answer from Enedis does not have the expected form: no access was given.",
        "err_stale_consent": "Enedis reports a data share older than this request: for safety, only a share made "
        "for this request gives access.",
        "err_too_many_returns": "Too many answers from Enedis came from your network.",
        "err_too_many_attempts": "Too many wrong codes were entered.",
        "err_not_found": "This page does not exist.",
        "err_bad_request": "The request could not be understood.",
        "err_server": "The service is temporarily unavailable.",
        # --- who runs it, help around the code, what to do after an error
        "home_not_enedis": "This server is not Enedis: you give your consent on Enedis's site, and you can "
        "withdraw it at any time from your Enedis customer account.",
        "home_operator_title": "Who runs this server",
        "home_operator_contact": "Contact:",
        "home_operator_unknown": "The operator of this server has not given their name.",
        "home_stores_intro": "This server keeps:",
        "code_hint": "8 letters, shown by your device (in Domoticz: in the log). Dashes and spaces are optional.",
        "confirm_expires": "This code is valid for {code_lifetime} after your device showed it.",
        "done_app": "Authorized application",
        "done_revoke": "You can withdraw this consent at any time from your Enedis customer account.",
        "title_unknown_code": "Unknown or expired code",
        "title_expired_code": "Code expired",
        "title_denied": "Authorization refused",
        "title_upstream_unavailable": "Enedis is not answering",
        "title_too_many_attempts": "Too many attempts",
        "title_not_found": "Page not found",
        "next_unknown_code": "Check the code shown by your device. If it has expired, your device will give you "
        "a new one.",
        "next_expired_code": "A code is only valid for {code_lifetime}. Ask your device for a new code, then "
        "follow its link straight away.",
        "next_bad_state": "Open the link shown by your device again, in this browser. If its code has expired, "
        "ask for a new one.",
        "next_bad_csrf": "Open the link shown by your device again and press the button once more.",
        "next_denied": "If this was a mistake, ask your device for a new code and accept the sharing on Enedis's site.",
        "next_bad_usage_points": "Start again from your device and pick at least one meter on Enedis's site.",
        "next_upstream_unavailable": "Nothing is lost: reload this page in a minute or two. If your device's code "
        "has expired meanwhile, ask for a new one.",
        "next_no_usage_points": "Reload this page in a few seconds.",
        "next_bad_return": "Start again from your device and give your consent on Enedis's site.",
        "next_stale_consent": "On Enedis's site (customer area, where data shares are managed), withdraw the share "
        "with this application, then start again from your device and share once more.",
        "next_too_many_returns": "Wait {wait} before trying again.",
        "title_stale_consent": "Share to renew",
        "next_exchange_failed": "Start again from your device to get a new code.",
        "next_too_many_attempts": "Wait {wait} before entering another code. Check it carefully: your device shows it.",
        "next_not_found": "Check the address, or start from the home page.",
        "next_bad_request": "Open the link shown by your device again.",
        "next_server": "Try again in a few minutes.",
        "units": {
            "year": ("year", "years"),
            "month": ("month", "months"),
            "day": ("day", "days"),
            "hour": ("hour", "hours"),
            "minute": ("minute", "minutes"),
            "second": ("second", "seconds"),
        },
    },
}


def _french_spacing(value):
    """French sets a space before : ; ! ? that must never begin a line: make it non-breaking."""
    if isinstance(value, str):
        return re.sub(r" ([:;!?])", "\u00a0\\1", value)
    if isinstance(value, list):
        return [_french_spacing(item) for item in value]
    return value


TEXTS["fr"] = {name: _french_spacing(value) for name, value in TEXTS["fr"].items()}

# Calendar-free, as config.parse_duration counts them.
UNITS = (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60))


def spell_duration(seconds: float, lang: str) -> str:
    """`300` -> "5 minutes", `94608000` -> "3 ans": the largest unit that counts it exactly
    (rounded up under a day, so a wait is never understated)."""
    seconds = max(1, int(seconds))
    names = TEXTS[lang]["units"]
    for unit, size in UNITS:
        if seconds >= size and (seconds % size == 0 or size < 86400):
            count = -(-seconds // size)
            return f"{count}\u00a0{names[unit][count > 1]}"  # never split "5 | minutes"
    return f"{seconds}\u00a0{names['second'][seconds > 1]}"


def pick_language(query_lang: str | None, cookie_lang: str | None, accept_language: str | None) -> str:
    """An explicit choice (link or cookie) first, then the browser's preference; French by default."""
    for choice in (query_lang, cookie_lang):
        if choice in LANGUAGES:
            return choice
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for item in (accept_language or "").split(","):
        tag, _, params = item.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best
