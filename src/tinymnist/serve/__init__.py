"""Stage 8, serving: the HTTP server and its draw-a-digit page (static/)."""
