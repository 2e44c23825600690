from .interrupts import launch

launch()
