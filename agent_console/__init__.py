"""The aiohttp web app: agent console, wallboard, admin, chat widget, REST API."""
