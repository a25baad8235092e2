//! enphase-mqtt: Enphase Enlighten cloud (API v4) to MQTT and Home Assistant.
//!
//! Data flows one way: `enlighten` (HTTP, OAuth, quota) → `model` → `home_assistant` → `mqtt`.
//! `simulator` is an independent model of the Enlighten cloud for tests, `demo` and `simulate`.
pub mod app;
pub mod bridge;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod enlighten;
pub mod fsutil;
pub mod home_assistant;
pub mod login;
pub mod model;
pub mod mqtt;
pub mod poller;
pub mod scheduler;
pub mod secret;
pub mod simulator;
pub mod status;
pub mod web;
pub mod zone;
