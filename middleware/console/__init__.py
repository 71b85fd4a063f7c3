"""The admin API and web console (``docs/console.md``).

``rbac`` holds roles, permissions and the endpoint table; ``auth`` sessions, tokens and CSRF;
``store`` users, credentials and the audit log; ``api`` the Starlette app; ``static`` the pages.
"""
