"""The MITM attack suite: every link, every active mode, a full send and read (docs/security.md)."""
