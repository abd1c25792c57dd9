"""Integrations with frameworks that are not dependencies of timecrisis: each subpackage imports
its framework, so nothing here is imported by `import timecrisis`."""
