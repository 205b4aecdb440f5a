"""Faces stage: shots -> face detections -> tracks -> 224x224 crops in the reference geometry."""
