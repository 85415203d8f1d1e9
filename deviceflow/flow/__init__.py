"""The device flow (RFC 8628) as the proxy runs it, with no web framework in it.

Life of a flow, one module per step in the RFC's words:
- device authorization (`device_authorization`): a device asks for codes;
- user interaction (`verification`): a person types the user code and confirms it;
- consent (`consent`): the person is sent to Enedis with a fresh state and comes back approved or denied;
- the device access token request (`device_code_grant`): the device polling `/device/token` receives
  tokens exactly once;
- the proxy's own tokens (`tokens`): in client_credentials mode the proxy mints them, bound to the
  consented usage points, at delivery so that no clear token is ever stored, and stored by digest only;
  they rotate in chains and are checked as Bearer tokens.

In FLOW=DEVICE, upstream's token response waits for the poll sealed to a key only the device_code opens
(deviceflow.sealing). A client_secret the device lends (no CLIENT_SECRET configured) is sealed the same
way, so the server cannot use it until the device polls: the code exchange then happens at that poll,
the authorization code having waited sealed too. What the store holds is in `records`.
"""

from __future__ import annotations

import time

from deviceflow.config import Config
from deviceflow.flow.consent import Consent
from deviceflow.flow.device_authorization import DeviceAuthorization
from deviceflow.flow.device_code_grant import DeviceCodeGrant, PendingView
from deviceflow.flow.tokens import Tokens
from deviceflow.flow.verification import Verification
from deviceflow.store import Store


class DeviceFlow:
    """The steps of the flow over one store, one configuration and one clock."""

    def __init__(self, config: Config, store: Store, upstream=None, clock=time.time, passthrough=None):
        """`upstream` is the Enedis client, used to turn a v2 `autorisation_id`
        into usage points; `passthrough` (deviceflow.passthrough) exchanges the
        authorization code at TOKEN_ENDPOINT in FLOW=DEVICE."""
        self.config = config
        self.store = store
        self.upstream = upstream
        self.clock = clock
        self.passthrough = passthrough
        self.authorization = DeviceAuthorization(config, store, clock)
        self.verification = Verification(config, store, clock)
        # The pending flows this instance has read lately, forgotten when settled here (device_code_grant).
        self.pending = PendingView(store, clock=clock)
        self.consent = Consent(config, store, clock, upstream, passthrough, self.pending)
        self.tokens = Tokens(config, store, clock)
        self.device_code_grant = DeviceCodeGrant(config, store, self.tokens, clock, passthrough, self.pending)
