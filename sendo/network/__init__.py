"""The node network: the service proxy (``proxy.py``) that every agent runs."""
