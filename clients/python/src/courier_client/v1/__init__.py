"""Generated from proto/courier/v1 by clients/python/generate.sh; do not edit."""
