//! The gateway's integration tests, in one binary (one link of wasmtime, one process sharing the
//! compile cache): a real server on a loopback port, a real HTTP client, real components built
//! from `guests/` and `examples/` by `meshwa-test-programs`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod buffers;
mod calls;
mod compat;
mod invoke;
mod legacy;
mod preinit;
mod programs;
mod quotas;
mod services;
mod serving;
mod spin;
mod typed;

/// Every guest program and example component has a test: `foreach_program!` names each one
/// built by `meshwa-test-programs`, and each name must be an alias in `tested` of the test that
/// runs it. A program added without a test fails this binary's build.
mod every_program_has_a_test {
    macro_rules! assert_test_exists {
        ($name:ident) => {
            // (`c_unsafe` is a program's name, not a claim about an item.)
            #[allow(unused_imports, clippy::unsafe_removed_from_name)]
            use crate::tested::$name as _;
        };
    }
    meshwa_test_programs::foreach_program!(assert_test_exists);
}

/// Which test runs which program (see `every_program_has_a_test`).
#[allow(unused_imports)]
mod tested {
    pub(crate) use crate::calls::a_function_calls_a_private_sibling_in_process as caller;
    pub(crate) use crate::compat::a_wasmtime_serve_component_finds_its_environment_store_and_error_codes as wstd_compat;
    pub(crate) use crate::invoke::a_scripted_guest_that_forges_a_handle_traps_alone as platform_script;
    pub(crate) use crate::invoke::invoke_hands_a_buffer_to_a_callee_and_gets_a_buffer_back as echo;
    pub(crate) use crate::invoke::invoke_hands_a_buffer_to_a_callee_and_gets_a_buffer_back as invoker;
    pub(crate) use crate::legacy::a_c_function_calls_other_functions_in_process as c_caller;
    pub(crate) use crate::legacy::c_and_cpp_examples_answer_with_services as c_notes;
    pub(crate) use crate::legacy::c_and_cpp_examples_answer_with_services as cpp_wordfreq;
    pub(crate) use crate::legacy::core_modules_are_adapted_once_and_cached as c_cgi;
    pub(crate) use crate::legacy::memory_unsafe_c_is_contained_while_another_tenant_is_served as c_unsafe;
    pub(crate) use crate::legacy::python_and_javascript_functions_answer as js_hello;
    pub(crate) use crate::legacy::python_and_javascript_functions_answer as python_hello;
    pub(crate) use crate::legacy::the_python_and_javascript_example_app_prices_and_keeps_orders as wonka_orders;
    pub(crate) use crate::legacy::the_python_and_javascript_example_app_prices_and_keeps_orders as wonka_pricing;
    pub(crate) use crate::preinit::a_pre_initialized_function_starts_every_request_from_its_snapshot as preinit;
    pub(crate) use crate::preinit::a_pre_initialized_function_starts_every_request_from_its_snapshot as preinit_random;
    pub(crate) use crate::programs::the_c_sha256_kernel_hashes_the_body as c_sha256;
    pub(crate) use crate::programs::the_checkout_app_answers_what_the_native_monolith_answers as tax_shop;
    pub(crate) use crate::programs::the_checkout_app_answers_what_the_native_monolith_answers as tax_shop_services;
    pub(crate) use crate::programs::the_checkout_app_answers_what_the_native_monolith_answers as tax_shop_typed;
    pub(crate) use crate::programs::the_checkout_logic_loop_runs_the_checkout_in_the_sandbox as tax_logic_cost;
    pub(crate) use crate::programs::the_hop_benchmark_programs_call_each_other as hopper;
    pub(crate) use crate::programs::the_hop_benchmark_programs_call_each_other as sink;
    pub(crate) use crate::programs::the_sdk_arena_grows_memory_only_past_its_reserved_bytes as arena;
    pub(crate) use crate::services::a_publishing_function_needs_its_grant_and_a_message_bus as publisher;
    pub(crate) use crate::services::key_value_operations_through_the_server as services;
    pub(crate) use crate::services::the_guestbook_example_keeps_state_and_reads_config as umbrella_guestbook;
    pub(crate) use crate::serving::a_request_never_finds_what_the_last_one_wrote_in_memory as residue;
    pub(crate) use crate::serving::both_example_tenants_answer_over_http1_and_http2 as acme_greeter;
    pub(crate) use crate::serving::both_example_tenants_answer_over_http1_and_http2 as globex_textkit;
    pub(crate) use crate::serving::components_from_third_party_sdks_run_unchanged as waki_hello;
    pub(crate) use crate::serving::components_from_third_party_sdks_run_unchanged as wstd_hello;
    pub(crate) use crate::serving::guest_faults_are_contained_with_the_right_status as faults;
    pub(crate) use crate::serving::the_orders_pipeline_runs_five_functions_in_process as orders_ingest;
    pub(crate) use crate::serving::the_orders_pipeline_runs_five_functions_in_process as orders_parse;
    pub(crate) use crate::serving::the_orders_pipeline_runs_five_functions_in_process as orders_price;
    pub(crate) use crate::serving::the_orders_pipeline_runs_five_functions_in_process as orders_render;
    pub(crate) use crate::serving::the_orders_pipeline_runs_five_functions_in_process as orders_validate;
    pub(crate) use crate::serving::two_tenants_interleave_concurrently_and_every_request_gets_a_fresh_instance as hello;
    pub(crate) use crate::spin::a_spin_app_runs_from_its_spin_toml as spin_back;
    pub(crate) use crate::spin::a_spin_app_runs_from_its_spin_toml as spin_front;
    pub(crate) use crate::spin::a_spin_app_runs_from_its_spin_toml as spin_middle;
    pub(crate) use crate::spin::a_spin_sdk_2_component_is_refused_with_a_clear_error as spin2_hello;
    pub(crate) use crate::typed::typed_calls_carry_every_kind_of_value_intact as typed_hopper;
    pub(crate) use crate::typed::typed_calls_carry_every_kind_of_value_intact as typed_sink;
    pub(crate) use crate::typed::typed_imports_that_cannot_be_linked_are_refused_at_load as typed_impostor;
}
