"""A scripted browser for end-to-end tests: follows links and submits forms with
requests, reading forms with the standard HTML parser (no JavaScript needed:
the pages must work without it)."""

from html.parser import HTMLParser
from urllib.parse import urljoin

import requests


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms, self.current = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.current = {
                "action": attrs.get("action", ""),
                "method": attrs.get("method", "get").lower(),
                "fields": [],
                "buttons": [],
            }
            self.forms.append(self.current)
        elif self.current is not None and tag == "input":
            self.current["fields"].append(attrs)
        elif self.current is not None and tag == "button":
            self.current["buttons"].append(attrs)

    def handle_endtag(self, tag):
        if tag == "form":
            self.current = None


class Browser:
    def __init__(self, headers=None):
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        self.page = None

    def open(self, url):
        self.page = self.session.get(url, timeout=10)
        return self.page

    def forms(self):
        parser = _Forms()
        parser.feed(self.page.text)
        return parser.forms

    def submit(self, index=0, button=None, checked=(), **values):
        """Submit form `index` with its hidden fields, the given values, the
        checkboxes whose value is in `checked`, and the named button."""
        form = self.forms()[index]
        data = []
        for field in form["fields"]:
            kind, name = field.get("type", "text"), field.get("name")
            if not name:
                continue
            if kind in ("checkbox", "radio"):
                if field.get("value") in checked:
                    data.append((name, field.get("value")))
            elif name not in values:
                data.append((name, field.get("value", "")))
        data.extend(values.items())
        if button is not None:
            data.append(button)
        url = urljoin(self.page.url, form["action"])
        self.page = (
            self.session.post(url, data=data, timeout=10)
            if form["method"] == "post"
            else self.session.get(url, params=data, timeout=10)
        )
        return self.page
