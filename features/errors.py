"""The error every custlab stage raises for bad input: the CLI turns it into one line."""


class CustlabError(Exception):
    """Input or state that custlab cannot use; the message names what is wrong."""


class DataContractError(CustlabError):
    """A table is missing, empty, or lacks a column the contract requires."""
