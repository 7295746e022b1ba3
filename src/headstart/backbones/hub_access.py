"""The Hugging Face Hub from here: whether it answers, and one file of a repository. The search asks
before it probes its curated hub candidates, so that without a network it says why it left them out
at once (huggingface_hub retries a failed download for about 20 s)."""

from __future__ import annotations

# seconds to wait for the Hub's answer: a machine without a network fails at once (no name resolution); a
# slow link answers within this
TIMEOUT_S = 3.0


def network_errors() -> tuple[type[BaseException], ...]:
    """What a download from the Hub raises when the network, the repository or the file fails it: OSError
    (connections, offline mode, a file missing from the cache) and huggingface_hub's own errors."""
    try:
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
    except ImportError:
        return (OSError,)
    return (OSError, EntryNotFoundError, HfHubHTTPError)


def hub_file(repo: str, filename: str) -> str | None:
    """The path of a repository's file: from the local cache, else downloaded when the Hub answers; None
    when the repository has no such file or the Hub cannot be asked."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo, filename)
    if isinstance(cached, str):
        return cached
    if cached is not None or not reachable():  # known to be absent, or no one to ask
        return None
    try:
        return hf_hub_download(repo, filename)
    except network_errors():
        return None


def reachable(timeout: float = TIMEOUT_S) -> bool:
    """Whether the Hugging Face Hub answers."""
    return why_unreachable(timeout) is None


def why_unreachable(timeout: float = TIMEOUT_S) -> str | None:
    """None when the Hugging Face Hub answers (through the proxies and endpoint huggingface_hub is set to
    use), else why not, in words."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as e:  # the HTTP client's connection and timeout errors (httpx or requests, by version)
        return f"no network: {constants.ENDPOINT} did not answer ({type(e).__name__})"
    return None
