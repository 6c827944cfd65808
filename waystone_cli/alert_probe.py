"""``waystone alerts test``: one signed test event posted to ``[alerts] webhook``.

Sent by the CLI itself (the standard library's HTTP client, so start-up stays fast),
not through the daemon's outbox: the point is to see, now, whether the receiver is
reachable and accepts the signature.  The event (type ``waystone.test``, a random id)
is never stored, so it is not in ``waystone alerts list``.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

from waystone_cli.core.alerts import SIGNATURE_HEADER, probe_event, signature
from waystone_cli.core.config import Config
from waystone_cli.core.errors import UsageError
from waystone_cli.core.secrets import Redactor, alerts_secret, config_secrets


def send_probe(config: Config) -> dict[str, Any]:
    """Post the test event; what happened: ``delivered``, ``status``, ``error``."""
    alerts = config.alerts
    if alerts.webhook is None:
        raise UsageError("no [alerts] webhook is configured: set [alerts] webhook first")
    secret = alerts_secret(config, os.environ)
    event = probe_event(str(uuid.uuid4()), datetime.now(UTC))
    headers = {"Content-Type": "application/json", "User-Agent": "waystone-alerts"}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, event.body)
    request = urllib.request.Request(alerts.webhook, data=event.body, headers=headers)
    status, error = None, None
    try:
        with urllib.request.urlopen(request, timeout=alerts.timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as err:
        status, error = err.code, f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        error = f"{type(reason).__name__}: {reason}"
    if error is None and status is not None and not 200 <= status < 300:
        error = f"HTTP {status}"
    redactor = Redactor.of(config_secrets(config, os.environ))
    return {
        "id": event.id,
        "webhook": redactor.text(alerts.webhook),
        "signed": bool(secret),
        "delivered": error is None,
        "status": status,
        "error": redactor.text(error) if error else None,
    }
