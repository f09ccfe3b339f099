"""Backends run models of one framework; built-ins and plugins register through entry points."""
