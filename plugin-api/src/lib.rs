pub use abi_stable;
