"""Raw customer data in, point-in-time features and labels out."""
