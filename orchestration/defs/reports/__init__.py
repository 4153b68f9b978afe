"""The daily visual report as an asset: its charts in the UI, its files beside the warehouse."""
