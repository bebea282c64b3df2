"""What a request may reach: registered credentials and endpoint hosts (``credentials``), files (``paths``)."""
