"""Zero- and few-shot anomaly detection and segmentation."""
