"""Protocol-faithful local vendor servers (written from the vendor documents), backed by real recognizers."""
