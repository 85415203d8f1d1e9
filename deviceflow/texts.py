"""What the pages say, in French (Enedis's customers) and English.

Templates take every sentence from here, so a page never mixes languages.
"""

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
        "home_stores": "Les codes en attente (quelques minutes), et pour chaque appareil autorisé les numéros de "
                       "compteur (PRM) consentis et des empreintes de ses jetons, jamais les jetons eux-mêmes, "
                       "pendant la durée de votre consentement. Aucune donnée de consommation n'est conservée.",
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
        "done_text": "Votre appareil a reçu l'autorisation. Vous pouvez fermer cette page et revenir à votre "
                     "Domoticz (ou autre) : les données arriveront dans quelques minutes.",
        "done_points": "Compteur(s) autorisé(s)",
        "error_title": "Un problème est survenu",
        "restart": "Recommencez depuis votre appareil pour obtenir un nouveau code.",
        "back_home": "Retour à l'accueil",
        "try_again": "Saisir un autre code",
        "err_unknown_code": "Ce code est inconnu ou n'est plus valable. Vérifiez-le, ou demandez un nouveau code à votre appareil.",
        "err_expired_code": "Ce code a expiré avant la fin de l'autorisation.",
        "err_bad_state": "Ce retour d'Enedis ne correspond à aucune demande en cours dans ce navigateur "
                         "(lien déjà utilisé, expiré, ou ouvert dans un autre navigateur).",
        "err_bad_csrf": "Le formulaire a expiré. Rechargez la page et réessayez.",
        "err_denied": "L'autorisation a été refusée sur le site d'Enedis. Votre appareil en est informé.",
        "err_bad_usage_points": "Enedis n'a pas indiqué de numéro de compteur valable.",
        "err_upstream_unavailable": "Enedis ne répond pas pour le moment. Réessayez dans quelques minutes.",
        "err_exchange_failed": "Le service d'autorisation n'a pas délivré l'accès (refus, réponse inutilisable ou "
                               "pas de réponse). Votre appareil en est informé.",
        "err_no_usage_points": "Enedis n'a pas encore enregistré votre partage. Rechargez cette page dans quelques secondes.",
        "err_too_many_attempts": "Trop de codes erronés ont été saisis. Attendez quelques minutes avant de réessayer.",
        "err_not_found": "Cette page n'existe pas.",
        "err_bad_request": "La requête n'a pas pu être comprise.",
        "err_server": "Le service est momentanément indisponible. Réessayez dans quelques minutes.",
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
        "home_stores": "Pending codes (a few minutes), and for each authorized device the meter numbers (PRM) you "
                       "consented to and digests of its tokens, never the tokens themselves, for as long as your "
                       "consent lasts. No consumption data is kept.",
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
        "done_text": "Your device has been authorized. You can close this page and go back to your Domoticz "
                     "(or other system): data will arrive within a few minutes.",
        "done_points": "Authorized meter(s)",
        "error_title": "Something went wrong",
        "restart": "Start again from your device to get a new code.",
        "back_home": "Back to the home page",
        "try_again": "Enter another code",
        "err_unknown_code": "This code is unknown or no longer valid. Check it, or ask your device for a new code.",
        "err_expired_code": "This code expired before the authorization was complete.",
        "err_bad_state": "This answer from Enedis matches no request pending in this browser "
                         "(link already used, expired, or opened in another browser).",
        "err_bad_csrf": "The form has expired. Reload the page and try again.",
        "err_denied": "The authorization was refused on Enedis's site. Your device has been told.",
        "err_bad_usage_points": "Enedis did not give a valid meter number.",
        "err_upstream_unavailable": "Enedis is not answering right now. Try again in a few minutes.",
        "err_exchange_failed": "The authorization server did not grant access (it refused, answered something "
                               "unusable, or did not answer). Your device has been told.",
        "err_no_usage_points": "Enedis has not registered your consent yet. Reload this page in a few seconds.",
        "err_too_many_attempts": "Too many wrong codes were entered. Wait a few minutes before trying again.",
        "err_not_found": "This page does not exist.",
        "err_bad_request": "The request could not be understood.",
        "err_server": "The service is temporarily unavailable. Try again in a few minutes.",
    },
}


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
