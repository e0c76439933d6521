"""ivr: a SIP/RTP IVR bridge (G.711 calls in, live speech recognition over WebSocket, YAML dialplans)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ivr")
except PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"
