"""CloudEvents 1.0 that budeval publishes (started, progress, completed, failed, cancelled, rejected)."""
