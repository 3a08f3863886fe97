"""Hosts, paths and URLs the stack writes into objects, each checked by one function.

`url_problem`: the URLs, oauth2-proxy's (`ingress.auth.oidcUrl`) and Prometheus' (`monitoring.prometheusUrl`).

Such a URL lands in plain text in Ingress annotations (ingress-nginx `auth-url` and `auth-signin`, which become nginx
configuration), in a Traefik Middleware (`forwardAuth.address`) or in KEDA ScaledObjects (`serverAddress`), and the
program appends paths to it (`/auth`, `/start?rd=...` in components/edge.py; KEDA appends `/api/v1/query?query=...`,
kedacore/keda pkg/scalers/prometheus_scaler.go ExecutePromQuery). So: http or https, a host in ASCII, no user name
or password, no query or fragment, and only characters that mean the same in a URL, an nginx configuration value and a
YAML string.

`host_problem` and `path_problem`: an Ingress host and route path the API server refuses or the controller never matches.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

SAFE = re.compile(r"[A-Za-z0-9._~:/\[\]-]")
"""Letters, digits and - . _ ~ : / [ ]: nothing nginx reads as a variable (`$`), an end of value (`;`, quotes,
whitespace), a block (`{`, `}`) or an escape (`\\`), and no percent-encoding that would decode to one."""
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def url_problem(url: str, sink: str) -> str | None:
    """What is wrong with `url` (None if nothing); `sink` says where it ends up, for the messages."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a malformed [IPv6] host or a port that is not a number from 0 to 65535
        return f"{url!r} is not a URL ({exc}); give it as http(s)://host[:port]/path"
    if parts.scheme not in ("http", "https") or not url.lower().startswith(f"{parts.scheme}://"):
        return f"{url!r} must start with http:// or https:// (the only schemes {sink} takes)"
    if "@" in parts.netloc:  # the URL itself is not echoed: it holds a password
        return (f"the URL holds a user name or password (`user:pass@host`); it would be written in plain text into {sink}. "
                "Give the URL without it (reach the service on an address that needs no credentials)")
    host = parts.hostname or ""
    if not host:
        return f"{url!r} has no host; give it as http(s)://host[:port]/path"
    if not host.isascii():
        try:
            hint = f" (`{host.encode('idna').decode()}`)"
        except UnicodeError:
            hint = ""
        return (f"{url!r}: the host {host!r} has non-ASCII characters, which can pass for another name (a Cyrillic 'а' "
                f"looks like a Latin 'a'); write it in ASCII, or as its punycode{hint}")
    if not _is_ip(host) and not _is_dns_name(host):
        return f"{url!r}: the host {host!r} is not a DNS name (labels of a-z, 0-9 and -, at most 63 characters each) or an IP address"
    if port == 0:
        return f"{url!r}: port 0 is not a port; give a number from 1 to 65535"
    if "?" in url or "#" in url:
        return (f"{url.split('?')[0].split('#')[0]!r}... has a query or fragment (not shown: it may hold a token); the program appends paths to the URL ({sink}), which would land inside "
                "it: give the base URL only")
    bad = next((ch for ch in url if not SAFE.fullmatch(ch)), None)
    if bad is not None:
        return (f"{url!r} holds {bad!r}; only letters, digits and - . _ ~ : / are allowed in it, since the URL is written "
                f"into {sink} (quotes, whitespace, ; {{ }} $ and backslashes would change the configuration, % encodes them)")
    segments = parts.path.split("/")[1:-1] if parts.path.endswith("/") else parts.path.split("/")[1:]
    if any(s in ("", ".", "..") for s in segments):
        return f"{url!r}: the path has an empty, '.' or '..' segment; give the path as the service serves it"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_dns_name(host: str) -> bool:
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(_LABEL.fullmatch(label) and len(label) <= 63 for label in labels)


def host_problem(host: str) -> str | None:
    """Why an Ingress host is refused (k8s.io/kubernetes v1.34.4 pkg/apis/networking/validation/validation.go
    validateIngressRules: an IP address is refused, a wildcard may only be a whole first label), or None."""
    octets = host.split(".")
    if (len(octets) == 4 and all(re.fullmatch(r"[0-9]{1,3}", o) and int(o) <= 255 for o in octets)) or _is_ip(host.strip("[]")):
        return ("is an IP address; the API server refuses an Ingress host that is one (\"must be a DNS name, not an IP "
                "address\"): give a DNS name that resolves to the ingress controller's address")
    if "*" in host:
        return ("is a wildcard; give each host name (the stack prints its URLs on the first host, and a Kubernetes wildcard "
                "matches one label only: `*.example.com` does not answer `example.com` or `a.b.example.com`)")
    long = next((label for label in host.split(".") if len(label) > 63), None)
    if long is not None:
        return f"has a label of {len(long)} characters; DNS allows at most 63 per label (RFC 1035 2.3.4): shorten it"
    if host.endswith(".") or "." not in host or not _is_dns_name(host):
        return "is not a DNS name (lower case, dots, no scheme or port)"
    return None


def path_problem(path: str) -> str | None:
    """A path no controller routes (the program strips trailing slashes): an empty, `.` or `..` segment. The API server
    refuses `//`, `/./`, `/../` and a trailing `/.` or `/..` for pathType Prefix, which the Traefik routes use
    (k8s.io/kubernetes v1.34.4 pkg/apis/networking/validation/validation.go invalidPathSequences, validateHTTPIngressPath);
    nginx matches a location against the URI after merging slashes and resolving dot segments (nginx docs,
    ngx_http_core_module `location`), so the nginx routes' regex with one never matches."""
    segments = path.rstrip("/").split("/")[1:]
    if any(s in ("", ".", "..") for s in segments):
        return ("has an empty, '.' or '..' segment (`//`, `/./`, `/../`); the API server refuses it on a Traefik route "
                "(pathType Prefix), and nginx matches request paths with those merged and resolved, so the route would never "
                "match: write the path without them")
    return None
