"""Inventory-optimization kernels: pure array functions on NumPy or CuPy arrays.

No pandas, no I/O, no Dask.  The batch job calls :func:`plan_orders`; the other
functions are its building blocks.  Units: stock in units, time in periods (the
forecast's period: days or weeks), money in currency.
"""
from .allocation import allocate_budget
from .echelon import two_echelon_placement
from .exceptions import EXCEPTION_CODES, exception_values, periods_since_demand, top_exception
from .explain import (BINDING_RULES, binding_rule, periods_of_supply, periods_until_stockout,
                      projected_inventory, stock_components)
from .network import subtree_sums, tree_placement
from .network_demand import node_demand_moments, node_demand_samples
from .lead_time import (interval_demand_moments, lead_time_demand_moments, mixture_demand_moments,
                        sample_lead_time_demand)
from .orders import inventory_position, order_quantity, periods_until_order
from .period_demand import daily_moments, quantile_function
from .outcomes import normal_loss, normal_second_order_loss, outcomes_normal, outcomes_samples
from .plan import plan_orders
from .simulate import simulate_inventory, simulation_totals
from .simulate_network import simulate_network
from .policies import (critical_fractile, economic_order_quantity, empirical_fill_rate_level,
                       empirical_quantile, fill_rate_level, newsvendor_quantity, normal_policy,
                       order_up_to_level, reorder_point, rq_policy, safety_stock, service_level_z,
                       ss_power_approximation)

__all__ = [
    "plan_orders",
    "simulate_inventory",
    "simulation_totals",
    "simulate_network",
    "allocate_budget",
    "two_echelon_placement",
    "EXCEPTION_CODES",
    "exception_values",
    "top_exception",
    "periods_since_demand",
    "BINDING_RULES",
    "binding_rule",
    "stock_components",
    "periods_of_supply",
    "periods_until_stockout",
    "projected_inventory",
    "tree_placement",
    "subtree_sums",
    "node_demand_moments",
    "node_demand_samples",
    "daily_moments",
    "interval_demand_moments",
    "mixture_demand_moments",
    "lead_time_demand_moments",
    "quantile_function",
    "sample_lead_time_demand",
    "inventory_position",
    "order_quantity",
    "periods_until_order",
    "normal_loss",
    "normal_second_order_loss",
    "outcomes_normal",
    "outcomes_samples",
    "critical_fractile",
    "economic_order_quantity",
    "empirical_fill_rate_level",
    "empirical_quantile",
    "fill_rate_level",
    "newsvendor_quantity",
    "normal_policy",
    "order_up_to_level",
    "reorder_point",
    "rq_policy",
    "safety_stock",
    "service_level_z",
    "ss_power_approximation",
]
