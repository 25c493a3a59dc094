"""The streaming segmentation job: read a bucket, segment each image, write masks and statistics."""
