"""Scale-out on Ray: model instances on other machines, behind the scheduler's `Instance`.

Imported only when `inferd serve --cluster` is given; Ray comes from the `ray` extra.
"""
