"""Restoring damaged scans before colorizing: find dust, hairs, scratches, blotches and missing
areas (a small segmentation net), fill them (a classical fill or a small inpainting net), and
mask the frame border, fiducial marks and data strip of scanned frames."""
