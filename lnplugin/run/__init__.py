"""How lnplugin is run: the entry points, apart from the library they start.

- `cli`: the `lnplugin` command (`python -m lnplugin` too);
- `server`: `lnplugin serve`, the HTTP API on uvicorn beside the follower (`asgi`:
  Flask on a thread pool, event streams on the loop);
- `cln_plugin`: `lnplugin-cln`, lnplugin inside Core Lightning as a plugin.

Nothing else in lnplugin imports this package, so it can import anything.
"""
