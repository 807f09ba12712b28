"""One function per user action, shared by the JSON API, the pages and the CLI."""
