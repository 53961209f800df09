"""How lnplugin is run: the entry points, apart from the library they start.

- `cli`: the `lnplugin` command (`python -m lnplugin` too);
- `server`: `lnplugin serve`, the HTTP API on waitress beside the follower;
- `cln_plugin`: `lnplugin-cln`, lnplugin inside Core Lightning as a plugin.

Nothing else in lnplugin imports this package, so it can import anything.
"""
