"""VidMuse grids."""
