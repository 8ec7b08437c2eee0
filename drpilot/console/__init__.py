"""The control room, `drpilot console`: a live web console for on-call.

    app.py       the Starlette app: pages, live feeds (Server-Sent Events), the JSON API, headers
    board.py     what the pages show, read from Temporal and the DNS provider
    feed.py      one shared poll per thing watched, fanned out to every watcher
    pages.py     the HTML, drawn on the server (a run's timeline and evidence by drpilot/report)
    actions.py   start, approve, pause, resume, abort through the front door, with the identity
    identity.py  who is asking: the SSO proxy's header from trusted addresses, or a dev identity
    policy.py    who may view, approve, start and abort which runbooks (--policy FILE)
    static/console.js  the one small script: places the feed's fragments, sends the buttons
"""
