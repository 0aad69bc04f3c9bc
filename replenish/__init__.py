"""replenish: demand forecasting and inventory optimization for millions of SKU-locations."""
__version__ = "0.1.0"
