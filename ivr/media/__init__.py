"""Media plane: RTP (RFC 3550), G.711, RFC 4733 digits, jitter buffer, prompts (sans-I/O cores) and
`session.RtpSession`, the asyncio RTP endpoint of one call."""
