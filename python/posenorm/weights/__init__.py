"""ImageNet weights derived offline from pinned public archives."""
