"""Annotating photos with a store's model: images as given (``annot query``), and a photo library kept in the store."""
