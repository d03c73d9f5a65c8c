"""What a trained network costs and where it can run: spike statistics, operation counts, NIR export."""
