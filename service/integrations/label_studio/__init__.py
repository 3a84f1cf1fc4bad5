"""Label Studio's ML backend API (/health, /setup, /predict, /webhook), served by the gateway."""
