"""A live dashboard of a running swarm: its agents in cascade order with their state, load and
latency; the edges queries took over the last minute; membership events as the dashboard saw them;
the last queries with every agent's decision; and actions (add, remove, kill) behind an API key.

`swarm dashboard NAME` serves it (as does `swarm serve`, at /dashboard). Ray-free: the routes
(`routes`) sit in the gateway's app, one poll loop (`poller`) feeds a view (`view`), and
`swarm.cluster.dashboard` does the polling and the actions on Ray. The front end is three small
files in `static/`: plain JavaScript drawing SVG, no framework, no build step, no CDN.
"""
