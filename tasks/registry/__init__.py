"""What the store knows about runs: manifests, listings, verification, the champion."""
