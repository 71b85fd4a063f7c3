"""Protocol adapters. Each subpackage registers itself with ``middleware.plugins`` on import."""
